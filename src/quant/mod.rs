//! Weight quantisation (INT8 weight-only, per-output-channel scales).
