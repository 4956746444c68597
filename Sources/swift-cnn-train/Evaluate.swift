import ArgumentParser
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a checkpoint on a data split.")
    func run() throws {}
}
