//! The front office as its own process (cluster mode). Configuration: see
//! `svcops_kit::service::ClusterConfig`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    svcops_kit::service::main::<front_office::FrontOffice>().await
}
