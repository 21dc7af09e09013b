//! The `civicgraph` binary: parse arguments, set up logging, call the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
