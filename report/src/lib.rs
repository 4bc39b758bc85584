//! Patrol report: aggregation, history, rendering and mail.
