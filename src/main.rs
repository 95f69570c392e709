fn main() -> std::process::ExitCode {
    drtool::cli::main()
}
