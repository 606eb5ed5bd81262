//! One module per tracepoint.
pub mod tcp_receive_reset;
