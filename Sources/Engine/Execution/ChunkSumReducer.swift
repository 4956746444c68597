/// Turns per-chunk partial sums into the sum over every chunk of the global batch, on every
/// rank. The engine only states what it needs; `Distributed` provides the exact
/// implementation (64-bit fixed point across chunks and ranks, docs/architecture.md §2.4).
public protocol ChunkSumReducer: AnyObject {
    /// `partials` holds `rows` local chunks' partials; `result` (indexed like the partials'
    /// values) receives the global sums of the values the segments cover, and nothing else.
    /// Throws if a value is NaN or infinite, naming its segment. Segments are whole tensors.
    func sumChunks<Partials: ChunkPartials>(_ partials: Partials, rows: Int, segments: [SumSegment],
                                            into result: UnsafeMutablePointer<Float>) throws
}

extension ChunkSumReducer {
    /// The same, for partials stored as `rows` × `width` floats, row-major.
    public func sumChunks(_ partials: UnsafePointer<Float>, rows: Int, width: Int, segments: [SumSegment],
                          into result: UnsafeMutablePointer<Float>) throws {
        try sumChunks(StoredPartials(partials, width: width), rows: rows, segments: segments, into: result)
    }
}
