//! Listen-in as its own process (cluster mode).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    svcops_kit::service::main::<listen_in::ListenIn>().await
}
