//! Who may use the control socket: peer credentials against the configured groups.
