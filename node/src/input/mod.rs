//! Inputs: tasks that feed a stream's hub with frames. Only `fake://` exists so far;
//! M4S and M4F inputs (pulling from another node) come with the cluster issue.

pub mod fake;
