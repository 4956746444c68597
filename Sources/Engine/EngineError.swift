/// Everything the engine reports; each case carries a sentence a user can act on.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    case invalidModel(String)
    case invalidData(String)
    case invalidCheckpoint(String)
    case nonFinite(String)
    /// An output that cannot be written, or that would overwrite an input.
    case output(String)

    public var description: String {
        switch self {
        case .invalidModel(let m), .invalidData(let m), .invalidCheckpoint(let m), .nonFinite(let m), .output(let m): return m
        }
    }
}
