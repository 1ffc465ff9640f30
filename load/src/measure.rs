//! What a process used: CPU seconds and resident memory, from `/proc` (Linux). `None` as the
//! pid means this process.

/// The `/proc` file of a process.
fn proc_file(pid: Option<u32>, file: &str) -> Option<String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    };
    std::fs::read_to_string(path).ok()
}

/// CPU seconds (user + system) the process has used so far; NaN when it cannot be read.
pub(crate) fn cpu_seconds_of(pid: Option<u32>) -> f64 {
    let Some(stat) = proc_file(pid, "stat") else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of the process now and at its peak, in MiB; NaN when it cannot be read.
pub(crate) fn resident_mib_of(pid: Option<u32>) -> (f64, f64) {
    let Some(status) = proc_file(pid, "status") else {
        return (f64::NAN, f64::NAN);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) this process has used so far.
pub(crate) fn cpu_seconds() -> f64 {
    cpu_seconds_of(None)
}

/// Resident memory of this process now and at its peak, in MiB.
pub(crate) fn resident_mib() -> (f64, f64) {
    resident_mib_of(None)
}
