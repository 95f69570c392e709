//! Retention rules (being written).
