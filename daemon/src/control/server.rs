//! The control socket server.
