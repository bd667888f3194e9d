mod harness;
mod ssh;
mod support;
