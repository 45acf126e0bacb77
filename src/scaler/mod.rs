//! Replica counts out.
