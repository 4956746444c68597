import Engine

/// How a process of a run ends, as sysexits(3) codes (docs/architecture.md §6): the same
/// on every rank, so that a batch script can act on it.
public enum ExitStatus {
    /// A runtime error: bad data or checkpoint, a non-finite value, I/O.
    public static let failure: Int32 = 1
    /// EX_USAGE: a bad flag, value, model spec or memory budget, or ranks started differently.
    public static let usage: Int32 = 64
    /// EX_TEMPFAIL: stopped by a signal at a step boundary with its checkpoint written; run
    /// again with --resume (the cluster scripts requeue the job).
    public static let interrupted: Int32 = 75

    /// The exit code for `error`.
    public static func of(_ error: Error) -> Int32 {
        switch error {
        case let agreed as AgreedError: return agreed.code
        case is UsageError, is InvalidSetting, EngineError.invalidModel: return usage
        default: return failure
        }
    }
}
