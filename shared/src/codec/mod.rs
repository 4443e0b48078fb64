//! OSQ codec and sign codes (see codec/osq.rs).
