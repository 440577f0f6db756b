//! The back office as its own process (cluster mode).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    svcops_kit::service::main::<back_office::BackOfficeOffice>().await
}
