//! In-process LPPSP transport for tests and the simulator
