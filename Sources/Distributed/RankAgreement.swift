import Engine
import Crypto
import Foundation

/// An error that every rank of the job knows at the same point (it follows a collective, or
/// the ranks agreed on it): one rank reports it and every rank exits with `code`, without
/// `MPI_Abort` and without a race between ranks printing the same line.
public struct AgreedError: Error, CustomStringConvertible {
    /// The error itself, on the rank that reports it (nil on the others).
    public let underlying: Error?
    /// The rank that prints the message.
    public let reportingRank: Int
    /// The exit code of every rank.
    public let code: Int32
    public var description: String { underlying.map { String(describing: $0) } ?? "" }

    /// `error`, which every rank has thrown alike, reported by rank 0.
    public init(_ error: Error) {
        self.init(underlying: error, reportingRank: 0, code: ExitStatus.of(error))
    }

    public init(underlying: Error?, reportingRank: Int, code: Int32) {
        (self.underlying, self.reportingRank, self.code) = (underlying, reportingRank, code)
    }
}

/// The ranks' start-up, compared before the first collective of training.
///
/// Every rank prepares alone (reads flags, data, checkpoints); one allgather then tells every
/// rank whether any failed and whether all were started with the same settings. Without it a
/// rank that fails alone leaves the others blocked in a collective, an error every rank hits
/// is printed N times, and ranks started with different flags (mpirun's `A : B` form) either
/// train different models under one digest or fail inside MPI with a message nobody can act on.
public enum RankAgreement {
    /// Runs `body`, a step every rank takes together (a collective precedes any error it can
    /// throw, so all ranks throw the same): its errors become `AgreedError`s that rank 0
    /// reports. A communicator's own failure stays this rank's.
    public static func together<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error where !(error is AgreedError) && !(error is CommunicatorError) {
            throw AgreedError(error)
        }
    }

    /// The most settings compared; each is one 8-byte hash slot of the gathered record.
    static let settingSlots = 64
    /// Bytes of a setting's value shown in a mismatch message.
    static let shownValueBytes = 120

    /// Compares every rank's start-up. `outcome` is this rank's settings — (name, value) pairs
    /// that must be equal on every rank, the same names in the same order — or its failure;
    /// Throws `AgreedError` on every rank when any rank failed (the lowest failing rank
    /// reports its error, every rank exits with its code) or when settings differ (rank 0
    /// names the first differing setting and its values, as a `UsageError`).
    public static func agree(_ outcome: Result<[(name: String, value: String)], Error>, communicator: Communicator) throws {
        var record = [UInt8](repeating: 0, count: 2 + 8 * settingSlots)
        let settings: [(name: String, value: String)]
        switch outcome {
        case .success(let s):
            precondition(s.count <= settingSlots, "more settings than the agreement compares")
            settings = s
            for (i, setting) in s.enumerated() {
                let hash = SHA256.hash(data: Data("\(setting.name)=\(setting.value)".utf8))
                for (k, byte) in hash.prefix(8).enumerated() { record[2 + 8 * i + k] = byte }
            }
        case .failure(let error):
            settings = []
            record[0] = 1
            record[1] = UInt8(clamping: ExitStatus.of(error))
        }
        let size = communicator.size, width = record.count
        let all = try communicator.allgather(record)
        if let failing = (0..<size).first(where: { all[$0 * width] == 1 }) {
            let underlying: Error?
            if case .failure(let error) = outcome { underlying = error } else { underlying = nil }
            throw AgreedError(underlying: underlying, reportingRank: failing, code: Int32(all[failing * width + 1]))
        }
        func hash(rank r: Int, slot i: Int) -> ArraySlice<UInt8> { all[(r * width + 2 + 8 * i)..<(r * width + 10 + 8 * i)] }
        guard let slot = (0..<settingSlots).first(where: { i in (1..<size).contains { hash(rank: $0, slot: i) != hash(rank: 0, slot: i) } })
        else { return }
        // A second gather, only on a mismatch: the values of the first differing setting.
        let value = Array((settings.indices.contains(slot) ? settings[slot].value : "(none)").utf8.prefix(shownValueBytes))
        let values = try communicator.allgather(value + [UInt8](repeating: 0, count: shownValueBytes - value.count))
        func shown(_ r: Int) -> String {
            String(decoding: values[(r * shownValueBytes)..<((r + 1) * shownValueBytes)].prefix { $0 != 0 }, as: UTF8.self)
        }
        let name = settings.indices.contains(slot) ? settings[slot].name : "setting \(slot + 1)"
        let differing = (1..<size).first { shown($0) != shown(0) } ?? 1
        throw AgreedError(UsageError(
            "the ranks were started with different settings: \(name) is '\(shown(0))' on rank 0 but '\(shown(differing))' on rank \(differing); every rank needs the same flags, data and version"))
    }
}
