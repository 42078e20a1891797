//! The tokio runtime of an LPPSP node: sockets, timers and threads driving the core state machines
