"""Cross-checks of the deployment files that no schema catches (run by .ci/deploy-check.sh).

The schema validators prove each file is well-formed Compose or Kubernetes; this proves the
files agree with the services and with each other:

- every setting they give (the ConfigMap's TOML, ENGAGENINJA_* variables) is a key the
  services know: settings refuse unknown keys, so a typo would stop a pod at start;
- secrets are never literal values: compose takes them from ${VAR:?...}, the manifests from
  the Secret, and the Secret template holds placeholders only;
- the dispatcher is given longer to stop than it may take (twice shutdown_grace_ms: the
  dispatcher, then its background tasks, each get the grace);
- ports, probes, scrape targets, mounted paths, kustomization resources and the binaries the
  image builds line up.

Usage: python deploy_lint.py REPO_ROOT. Prints one line per failed check; exit 1 if any.
Needs PyYAML, and tomllib (Python 3.11+) or tomli.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

PREFIX = "ENGAGENINJA_"
# Variables the services read that are not settings keys (common::process, common::config).
NON_SETTING_VARIABLES = {"ENGAGENINJA_CONFIG"}
# Tables whose keys are free-form (librdkafka properties), not settings.
FREE_FORM_TABLES = ("log.kafka.client",)
# Settings that are secrets: never a literal in a committed file.
SECRET_SETTINGS = {
    "credentials.keys",
    "admin.platform_admin_key",
    "onboarding.master_auth_token",
    "log.kafka.client",
}
PLACEHOLDER = "REPLACE_ME"
REQUIRED_VARIABLE = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)


def known_settings(documented: Path) -> tuple[set[str], dict[str, object]]:
    """Keys of deploy/engageninja.toml, the documented list of every setting: its real keys
    (with their defaults) and the ones it shows commented out (optional, no default)."""
    text = documented.read_text()
    defaults = flatten(tomllib.loads(text))
    keys = set(defaults)
    section = ""
    for line in text.splitlines():
        header = re.match(r"^\[([a-z_.]+)\]\s*$", line)
        if header:
            section = header.group(1)
            continue
        commented = re.match(r"^#\s*([a-z_]+)\s*=\s", line)
        if commented:
            keys.add(f"{section}.{commented.group(1)}" if section else commented.group(1))
    # Documented in prose only (a ring given from the environment).
    keys.add("credentials.keys")
    return keys, defaults


def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in FREE_FORM_TABLES:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def is_known(key: str, known: set[str]) -> bool:
    return key in known or any(key == t or key.startswith(t + ".") for t in FREE_FORM_TABLES)


def setting_of(variable: str) -> str | None:
    """The settings key an ENGAGENINJA_* variable sets (figment: lowercased, `__` nests), or
    None when the services ignore it (common::config only reads SECTION__KEY and DATA_DIR)."""
    rest = variable[len(PREFIX):].lower()
    if "__" in rest:
        return rest.replace("__", ".")
    if rest == "data_dir":
        return rest
    return None


def check_variables(where: str, names: list[str], known: set[str]) -> None:
    for name in names:
        if not name.startswith(PREFIX) or name in NON_SETTING_VARIABLES:
            continue
        key = setting_of(name)
        if key is None:
            fail(f"{where}: {name} is not a setting (only SECTION__KEY and DATA_DIR are read)")
        elif not is_known(key, known):
            fail(f"{where}: {name} sets {key}, which is not a setting (deploy/engageninja.toml)")


def kind(number: object) -> str:
    if isinstance(number, bool):
        return "bool"
    if isinstance(number, (int, float)):
        return "number"
    return type(number).__name__


def seconds(duration: str) -> float:
    """A compose duration such as 30s, 1m30s or 500ms."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def built_binaries(dockerfile: Path) -> set[str]:
    return set(re.findall(r"--bin\s+([A-Za-z0-9_-]+)", dockerfile.read_text()))


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def check_compose(root: Path, known: set[str], binaries: set[str]) -> None:
    path = root / "deploy/docker-compose.yml"
    where = "deploy/docker-compose.yml"
    compose = yaml.safe_load(path.read_text())  # anchors and merge keys resolved
    services = compose["services"]
    for name, service in services.items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        check_variables(f"{where}: {name}", list(environment), known)
        for variable, value in environment.items():
            key = setting_of(variable) if variable.startswith(PREFIX) else None
            secret = key in SECRET_SETTINGS or variable in {"GF_SECURITY_ADMIN_PASSWORD"}
            if secret and not (isinstance(value, str) and REQUIRED_VARIABLE.match(value)):
                fail(f"{where}: {name}: {variable} must be a required variable ${{NAME:?...}}, not a value")
        if (service.get("build") or {}).get("dockerfile") == "deploy/Dockerfile":
            command = service.get("command") or []
            if not command or command[0] not in binaries:
                fail(f"{where}: {name}: command {command!r} is not a binary deploy/Dockerfile builds ({sorted(binaries)})")

    dispatcher_env = services["dispatcher"]["environment"]
    grace_ms = int(dispatcher_env.get("ENGAGENINJA_DISPATCHER__SHUTDOWN_GRACE_MS", 10000))
    stop = seconds(services["dispatcher"].get("stop_grace_period", "10s"))
    if stop <= 2 * grace_ms / 1000:
        fail(f"{where}: dispatcher stop_grace_period {stop:g}s must exceed twice shutdown_grace_ms ({2 * grace_ms / 1000:g}s)")

    # Prometheus scrapes each service where it listens.
    listens = {
        "dispatcher": port_of(dispatcher_env.get("ENGAGENINJA_DISPATCHER__OPS_LISTEN", "127.0.0.1:9090")),
        "admin-api": port_of(services["admin-api"]["environment"].get("ENGAGENINJA_ADMIN__OPS_LISTEN", "127.0.0.1:9091")),
    }
    prometheus = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for static in job.get("static_configs", []) for t in static.get("targets", [])]
        for job in prometheus.get("scrape_configs", [])
    }
    for service, port in listens.items():
        if f"{service}:{port}" not in targets.get(service, []):
            fail(f"deploy/prometheus/prometheus.yml: job {service} must scrape {service}:{port} (got {targets.get(service)})")
    for job, hosts in targets.items():
        for target in hosts:
            host = target.rsplit(":", 1)[0]
            if host not in services and host != "localhost":
                fail(f"deploy/prometheus/prometheus.yml: job {job} scrapes {target}, not a compose service")

    datasources = root / "deploy/grafana/provisioning/datasources"
    for file in sorted(datasources.glob("*.y*ml")):
        for source in yaml.safe_load(file.read_text()).get("datasources", []):
            host = re.sub(r"^https?://", "", source.get("url", "")).split(":")[0].split("/")[0]
            if host not in services:
                fail(f"{file.relative_to(root)}: data source {source.get('name')} points at {host}, not a compose service")


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_kubernetes(root: Path, known: set[str], defaults: dict[str, object], binaries: set[str]) -> None:
    k8s = root / "deploy/k8s"
    manifests = sorted((k8s / "manifests").glob("*.yaml"))
    objects = [(path, doc) for path in manifests for doc in documents(path)]

    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    listed = {(k8s / resource).resolve() for resource in kustomization.get("resources", [])}
    for path in manifests:
        if path.resolve() not in listed:
            fail(f"deploy/k8s/kustomization.yaml: {path.relative_to(root)} is not in resources")
    for resource in sorted(listed):
        if not resource.exists():
            fail(f"deploy/k8s/kustomization.yaml: resource {resource} does not exist")

    template = k8s / "secret.template.yaml"
    template_text = template.read_text()
    secret = documents(template)[0]
    if template.resolve() in listed:
        fail("deploy/k8s/kustomization.yaml: the Secret template must not be applied")
    for key, value in (secret.get("stringData") or {}).items():
        if value != PLACEHOLDER:
            fail(f"deploy/k8s/secret.template.yaml: {key} must be the placeholder {PLACEHOLDER}, never a real value")
    if secret.get("data"):
        fail("deploy/k8s/secret.template.yaml: no data: entries (base64 values) in the template")

    configs = [doc for _, doc in objects if doc.get("kind") == "ConfigMap"]
    settings: dict[str, object] = {}
    for config in configs:
        for name, text in (config.get("data") or {}).items():
            if not name.endswith(".toml"):
                continue
            where = f"ConfigMap {config['metadata']['name']} {name}"
            try:
                settings = flatten(tomllib.loads(text))
            except tomllib.TOMLDecodeError as error:
                fail(f"{where}: not TOML: {error}")
                continue
            for key, value in settings.items():
                if not is_known(key, known):
                    fail(f"{where}: {key} is not a setting (deploy/engageninja.toml)")
                elif key in defaults and kind(value) != kind(defaults[key]):
                    fail(f"{where}: {key} is a {kind(value)}, the setting is a {kind(defaults[key])}")
                if key in SECRET_SETTINGS:
                    fail(f"{where}: {key} is a secret: give it from the Secret, not the ConfigMap")

    grace_ms = int(settings.get("dispatcher.shutdown_grace_ms", defaults["dispatcher.shutdown_grace_ms"]))
    listen_ports = {
        "dispatcher": port_of(str(settings.get("dispatcher.ops_listen", defaults["dispatcher.ops_listen"]))),
        "admin-api": port_of(str(settings.get("admin.ops_listen", defaults["admin.ops_listen"]))),
    }
    key_file = settings.get("credentials.key_file")

    for path, doc in objects:
        if doc.get("kind") != "Deployment":
            continue
        name = doc["metadata"]["name"]
        where = f"{path.relative_to(root)}: Deployment {name}"
        pod = doc["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if name == "dispatcher" and grace <= 2 * grace_ms / 1000:
            fail(f"{where}: terminationGracePeriodSeconds {grace} must exceed twice shutdown_grace_ms ({2 * grace_ms / 1000:g}s)")
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for container in pod["containers"]:
            command = container.get("command") or []
            if not command or command[0] not in binaries:
                fail(f"{where}: command {command!r} is not a binary deploy/Dockerfile builds ({sorted(binaries)})")
            names = [variable["name"] for variable in container.get("env", [])]
            check_variables(where, names, known)
            for variable in container.get("env", []):
                key = setting_of(variable["name"]) if variable["name"].startswith(PREFIX) else None
                if key in SECRET_SETTINGS and "value" in variable:
                    fail(f"{where}: {variable['name']} is a secret: take it from the Secret (valueFrom)")
                reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
                if reference and reference["key"] not in template_text:
                    fail(f"{where}: {variable['name']} refers to Secret key {reference['key']}, which secret.template.yaml does not describe")
            ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
            if listen_ports.get(name) not in ports.values():
                fail(f"{where}: no container port for {name}'s listen port {listen_ports.get(name)}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = (container.get(probe) or {}).get("httpGet")
                if not http:
                    fail(f"{where}: no {probe} over HTTP")
                    continue
                expected = "/readyz" if probe == "readinessProbe" else "/healthz"
                if http["path"] != expected:
                    fail(f"{where}: {probe} asks {http['path']}, expected {expected}")
                if ports.get(http["port"], http["port"]) != listen_ports.get(name):
                    fail(f"{where}: {probe} port {http['port']} is not the listen port {listen_ports.get(name)}")
            annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/port") not in (None, str(listen_ports.get(name))):
                fail(f"{where}: prometheus.io/port {annotations['prometheus.io/port']} is not the listen port")
            if key_file:
                mounted = False
                for mount in container.get("volumeMounts", []):
                    volume = volumes.get(mount["name"], {})
                    for item in (volume.get("secret") or {}).get("items", []):
                        if f"{mount['mountPath'].rstrip('/')}/{item['path']}" == key_file:
                            mounted = True
                if not mounted:
                    fail(f"{where}: credentials.key_file {key_file} is not mounted from the Secret")
            resources = container.get("resources") or {}
            if not resources.get("requests") or not resources.get("limits"):
                fail(f"{where}: resource requests and limits are required")

    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in objects}
    for needed in [("PodDisruptionBudget", "dispatcher"), ("PodDisruptionBudget", "admin-api"),
                   ("HorizontalPodAutoscaler", "admin-api"), ("Service", "admin-api")]:
        if needed not in kinds:
            fail(f"deploy/k8s/manifests: no {needed[0]} {needed[1]}")


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    known, defaults = known_settings(root / "deploy/engageninja.toml")
    binaries = built_binaries(root / "deploy/Dockerfile")
    if not binaries:
        fail("deploy/Dockerfile: no --bin found in its cargo build")
    check_compose(root, known, binaries)
    check_kubernetes(root, known, defaults, binaries)
    for message in failures:
        print(f"deploy-lint: {message}", file=sys.stderr)
    if not failures:
        print(f"deploy-lint: settings, secrets, grace periods, ports, probes and references agree "
              f"({len(known)} known settings; binaries {', '.join(sorted(binaries))})", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
