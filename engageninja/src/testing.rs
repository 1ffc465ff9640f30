//! Whole stacks in the one test harness ([`common::testing`]), for every suite that needs the
//! dispatcher and the in-process scenarios.

use common::config::Settings;
pub use common::testing::{TestApp, providers_unreachable, settings, settings_with_platform_key};

use crate::stack::{Role, Stack, StackError};

/// Builds the stack of `role` with `settings` and runs it.
pub async fn spawn(settings: Settings, role: Role) -> Result<TestApp, StackError> {
    let stack = Stack::build(settings, role).await?;
    let (addr, ops_addr) = (stack.local_addr(), Some(stack.ops_addr()));
    let demo_key = stack.demo_key().map(|key| key.secret.clone());
    Ok(TestApp::run(addr, ops_addr, demo_key, |stop| {
        stack.run_until_stopped(stop)
    }))
}

/// The all-in-one stack with `settings`; panics if it does not start.
pub async fn all_in_one(settings: Settings) -> TestApp {
    spawn(settings, Role::AllInOne).await.expect("the stack starts")
}
