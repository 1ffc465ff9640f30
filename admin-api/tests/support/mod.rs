//! The admin API alone in the one test harness ([`common::testing::TestApp`]), started by
//! [`admin_api::start`] as the processes start it: embedded backends under the settings' data
//! directory, webhook status changes written to the store, the demo tenant bootstrapped when
//! `demo.bootstrap` is set. No dispatcher runs: a suite that needs one lives in `engageninja`.

use std::sync::Arc;

use common::TenantId;
use common::config::Settings;
use common::credentials::keyring_from_settings;
use common::store::StoreStatusSink;
use common::testing::TestApp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts the admin API with `settings` and runs it; panics if it does not start.
pub(crate) async fn spawn(settings: Settings) -> TestApp {
    let (log, store) = common::backends::open(&settings).await.expect("the backends open");
    let listener = TcpListener::bind(settings.admin.listen)
        .await
        .expect("the API's port binds");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let keep = settings
        .demo
        .bootstrap
        .then(|| TenantId::parse(settings.demo.tenant_id.clone()).expect("demo.tenant_id is valid"));
    let (tracker, background, stopping) = (TaskTracker::new(), CancellationToken::new(), CancellationToken::new());
    let wiring = admin_api::Wiring {
        statuses: Arc::new(StoreStatusSink(Arc::clone(&store))),
        store,
        log,
        keyring: Arc::new(keyring_from_settings(&settings).expect("the key ring loads")),
        public_url: settings.admin.public_url_or(addr),
        stopping: stopping.clone(),
    };
    let started = admin_api::start(&settings, wiring, listener, keep, &tracker, background.clone())
        .await
        .expect("the admin API starts");
    let demo_key = started.demo_key.map(|key| key.secret);
    TestApp::run(addr, None, demo_key, move |stop| async move {
        // Event streams end first, so that the graceful stop does not wait on them.
        let served = started
            .server
            .run_until_stopped(async move {
                stop.await;
                stopping.cancel();
            })
            .await;
        background.cancel();
        tracker.close();
        tracker.wait().await;
        served
    })
}
