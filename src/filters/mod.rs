//! The modules, one small file each, and the registry (name → constructor).
