//! Runs every case that applies to a target, one after the other in one process, and checks that
//! each made the registrations it declares: the loop behind tests/tests/conformance.rs (one
//! server) and tests/tests/cluster.rs (cases spread over several nodes).

use std::time::Duration;

use super::{Target, all};

/// The longest one case may take here; its own waits are much shorter (10 s per event).
const CASE_LIMIT: Duration = Duration::from_secs(120);

/// What a run of the whole suite found.
#[derive(Debug, Default)]
pub struct SuiteRun {
    /// Cases that ran.
    pub ran: usize,
    /// One line per failed case: `name (§section): error`, or a sign-up count that differs from
    /// the one the case declares.
    pub failures: Vec<String>,
    /// Cases skipped because the target lacks what they need, with the runner option it is.
    pub skipped: Vec<(&'static str, &'static str)>,
}

/// Runs every case applying to `target`, in list order or `reversed`: the cases share the run's
/// pooled accounts, and none may depend on what another left behind. Each case's own
/// registrations must match what it declares (`cases::pool::SIGN_UPS`).
pub async fn run_every_case(target: &Target, reversed: bool) -> SuiteRun {
    let mut run = SuiteRun::default();
    let mut selected: Vec<_> = all().into_iter().filter(|c| c.applies_to(target)).collect();
    if reversed {
        selected.reverse();
    }
    for case in selected {
        if let Some(option) = case.missing(target) {
            run.skipped.push((case.name, option));
            continue;
        }
        run.ran += 1;
        let before = target.pool.sign_ups();
        let outcome = tokio::time::timeout(CASE_LIMIT, (case.run)(target.clone())).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!("timed out after {CASE_LIMIT:?}")),
        };
        if let Some(e) = error {
            run.failures.push(format!("{} ({}): {e}", case.name, case.section));
            continue;
        }
        let made = target.pool.sign_ups() - before;
        if made != case.sign_ups() {
            run.failures.push(format!("{} made {made} registration requests, declares {}", case.name, case.sign_ups()));
        }
    }
    run
}
