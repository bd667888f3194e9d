mod config_cli;
mod harness;
mod ssh;
mod support;
