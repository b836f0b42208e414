//! The `tern` binary: see `tern_node::cli`.

fn main() -> std::process::ExitCode {
    tern_node::cli::main()
}
