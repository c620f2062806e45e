fn main() -> std::process::ExitCode {
    deepseek_ocr::cli::main()
}
