//! The front office's integration tests, in one binary (one link instead of one per file):
//! over gRPC as in a process of its own, and its read models on both databases.
#![allow(clippy::unwrap_used)]

mod common;

mod backpressure;
mod case_list;
mod contact_list;
mod contacts;
mod customer_list;
mod customers;
mod erasure;
mod escalation;
mod lifecycle;
mod roles;
mod routing;
