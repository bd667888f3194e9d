mod config_cli;
mod harness;
mod support;
mod sync;
