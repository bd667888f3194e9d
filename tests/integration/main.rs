mod alert;
mod harness;
mod support;
