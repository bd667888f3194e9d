mod alert;
mod config_cli;
mod daemon;
mod harness;
mod local;
mod ssh;
mod support;
mod sync;
