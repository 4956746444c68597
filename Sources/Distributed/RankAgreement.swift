import Engine
import Crypto
import Foundation

/// An error that every rank of the job knows at the same point (it follows a collective, or
/// the ranks agreed on it): one rank reports it and every rank exits with `code`, without
/// `MPI_Abort` and without a race between ranks printing the same line.
public struct AgreedError: Error, CustomStringConvertible {
    /// The message; only meaningful on `reportingRank`.
    public let message: String
    /// The rank that prints the message.
    public let reportingRank: Int
    /// The exit code of every rank.
    public let code: Int32
    public var description: String { message }

    public init(message: String, reportingRank: Int, code: Int32) {
        self.message = message
        self.reportingRank = reportingRank
        self.code = code
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
    /// The most settings compared; each is one 8-byte hash slot of the gathered record.
    static let settingSlots = 64
    /// Bytes of a setting's value shown in a mismatch message.
    static let shownValueBytes = 120

    /// Compares every rank's start-up. `outcome` is this rank's settings — (name, value) pairs
    /// that must be equal on every rank, the same names in the same order — or its failure;
    /// `exitCode` gives a failure's exit code. Throws `AgreedError` on every rank when any
    /// rank failed (the lowest failing rank reports its error) or when settings differ (rank
    /// 0 names the first differing setting and its values, exit code `mismatchCode`).
    public static func agree(_ outcome: Result<[(name: String, value: String)], Error>, communicator: Communicator,
                             exitCode: (Error) -> Int32, mismatchCode: Int32) throws {
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
            record[1] = UInt8(clamping: exitCode(error))
        }
        let size = communicator.size, width = record.count
        let all = try communicator.allgather(record)
        if let failing = (0..<size).first(where: { all[$0 * width] == 1 }) {
            let message: String
            if case .failure(let error) = outcome { message = String(describing: error) } else { message = "" }
            throw AgreedError(message: message, reportingRank: failing, code: Int32(all[failing * width + 1]))
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
        throw AgreedError(
            message: "the ranks were started with different settings: \(name) is '\(shown(0))' on rank 0 but '\(shown(differing))' on rank \(differing); every rank needs the same flags, data and version",
            reportingRank: 0, code: mismatchCode)
    }
}
