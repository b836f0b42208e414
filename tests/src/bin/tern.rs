//! The `tern` binary again, built inside tern-tests so its end-to-end tests find it
//! through `CARGO_BIN_EXE_tern-e2e`. Same entry point as node/src/main.rs.

fn main() -> std::process::ExitCode {
    tern_node::cli::main()
}
