//! Outputs: grounding parsing, markdown rewriting, box drawing.
