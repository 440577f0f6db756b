//! One shape for every port's contract suite: a list of cases, each an async fn over the
//! port, run against every adapter of the port.
//!
//! A suite is a test target holding
//!
//! - a module `cases` with one `pub async fn case(port: Port)` per case, written against the
//!   port alone;
//! - one fixture per adapter, implementing [`ContractFixture`]: it opens a fresh adapter (a
//!   database of its own, a temporary directory), hands out the port over it and cleans up;
//! - one [`contract_suite!`] naming the adapters and the cases.
//!
//! The macro generates a module per adapter and a `#[tokio::test]` per case in it, so a
//! failure names both (`postgres::exact_version_appends`).

use std::future::Future;
use std::time::Duration;

/// Upper bound for one case, fixture set-up and teardown excluded: generous, so a slow
/// machine passes, but a hung adapter fails the test instead of hanging the run.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// One adapter under test, fresh for every case.
///
/// `new` opens it (and fails loudly when what it needs is not there: contract tests never
/// skip), `port` is what the cases get, `teardown` removes what `new` made. A case that
/// fails panics before `teardown`, so what it left (a database, say) stays for a look.
pub trait ContractFixture: Sized {
    /// What a case is given: usually the port as a trait object (`Arc<dyn EventStore>`),
    /// or a small struct with the port and what keeps cases apart (a topic prefix).
    type Port;

    /// A fresh adapter.
    fn new() -> impl Future<Output = Self>;

    /// The port over this adapter, for one case.
    fn port(&self) -> Self::Port;

    /// Removes what [`ContractFixture::new`] made.
    fn teardown(self) -> impl Future<Output = ()>;
}

/// Generates a contract suite: for every adapter a module of that name, in it one test per
/// case, named after the case.
///
/// ```
/// use svcops_testsuite::{ContractFixture, contract_suite};
///
/// /// An adapter that needs nothing: its port is a number.
/// struct InMemoryFixture(u32);
///
/// impl ContractFixture for InMemoryFixture {
///     type Port = u32;
///
///     async fn new() -> Self {
///         Self(42)
///     }
///
///     fn port(&self) -> u32 {
///         self.0
///     }
///
///     async fn teardown(self) {}
/// }
///
/// mod cases {
///     pub async fn the_port_is_the_fixtures(port: u32) {
///         assert_eq!(port, 42);
///     }
///
///     pub async fn every_case_gets_a_port(_port: u32) {}
/// }
///
/// contract_suite! {
///     adapters: { in_memory => InMemoryFixture, another => InMemoryFixture },
///     cases: [the_port_is_the_fixtures, every_case_gets_a_port],
/// }
/// # fn main() {}
/// ```
///
/// generates `in_memory::the_port_is_the_fixtures`, `in_memory::every_case_gets_a_port`,
/// `another::the_port_is_the_fixtures` and `another::every_case_gets_a_port`. Each test runs
/// on a multi-threaded runtime (4 workers, so cases can race writers against each other): it
/// opens the adapter's fixture ([`ContractFixture::new`]), awaits
/// `cases::<case>(fixture.port())` within [`CASE_TIMEOUT`], then tears the fixture down.
///
/// Names resolve as at the call: the cases in the module `cases` beside the call, the
/// fixtures (any type, e.g. `KeysOf<PostgresFixture>`) in the calling module. The calling
/// crate needs tokio with the `macros`, `rt-multi-thread` and `time` features.
#[macro_export]
macro_rules! contract_suite {
    (
        adapters: { $($adapter:ident => $fixture:ty),+ $(,)? },
        cases: $cases:tt $(,)?
    ) => {
        $(
            $crate::contract_suite!(@adapter $adapter, $fixture, $cases);
        )+
    };
    // One adapter's module; the case list comes in as one token tree, so each adapter can
    // repeat over all of it.
    (@adapter $adapter:ident, $fixture:ty, [$($case:ident),+ $(,)?]) => {
        mod $adapter {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = <$fixture as $crate::ContractFixture>::new().await;
                    let port = $crate::ContractFixture::port(&fixture);
                    ::tokio::time::timeout($crate::CASE_TIMEOUT, super::cases::$case(port))
                        .await
                        .unwrap_or_else(|_| {
                            panic!(
                                "{}::{} did not finish within {:?}",
                                stringify!($adapter),
                                stringify!($case),
                                $crate::CASE_TIMEOUT
                            )
                        });
                    $crate::ContractFixture::teardown(fixture).await;
                }
            )+
        }
    };
}
