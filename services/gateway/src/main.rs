#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    linli_gateway::cli::main()
}
