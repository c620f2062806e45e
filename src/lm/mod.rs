//! The DeepSeek-V2 MoE decoder (MHA variant).
