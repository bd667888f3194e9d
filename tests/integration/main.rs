mod alert;
mod config_cli;
mod daemon;
mod harness;
mod local;
mod support;
mod sync;
