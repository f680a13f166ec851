#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    linli_logistics::cli::main()
}
