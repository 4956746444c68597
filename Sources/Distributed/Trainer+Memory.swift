import Engine
import Foundation

extension Trainer {
    /// About the bytes a trainer allocates on a rank that holds `localChunks` chunks:
    /// parameters, gradients and the optimizer's state, every local chunk's gradient partials, and for each
    /// local sample its activations (input, every layer's output, two gradient buffers of the
    /// largest layer) plus a tenth for what layers keep for backward (a pool's argmax, batch
    /// norm's normalised input) and the per-thread workspaces, which hold one sample at a time;
    /// and the whole batch's factors that `WholeBatchGradients` gathers (at most two floats
    /// per parameter of the layers it covers).
    /// Within about 10 % of the peak resident size of seed-cnn, seed-cnn-bn and letters-cnn
    /// runs (docs/reliability.md).
    public static func estimatedBytes(network: Network, options: TrainingOptions, localChunks: Int) -> Int {
        let stateTensors = options.hyperparameters.optimizer.stateNames.count
        let state = network.layout.parameterCount * (2 + stateTensors + localChunks) + network.layout.bufferCount
            + WholeBatchGradients.gatheredFloats(of: network, batchSize: options.hyperparameters.batchSize)
        let activations = Activations.floatsPerSample(of: network)
        return 4 * (state + localChunks * options.hyperparameters.chunkSize * (activations + activations / 10))
    }

    /// Fails before anything large is allocated when this rank's trainer would not fit in the
    /// memory available to it (what the system says is available, or what the cgroup allows,
    /// shared by the ranks on this node), naming the estimate and the largest batch that fits.
    public static func checkMemory(network: Network, options: TrainingOptions, rank: Int, ranks: Int, ranksOnThisNode: Int) throws {
        guard let available = availableMemory().map({ $0 / max(ranksOnThisNode, 1) }) else { return }
        func bytes(chunksPerBatch: Int) -> Int {
            let local = chunkRange(rank: rank, ranks: ranks, chunks: chunksPerBatch).count
            return estimatedBytes(network: network, options: options, localChunks: local)
        }
        let needed = bytes(chunksPerBatch: options.hyperparameters.chunksPerBatch)
        guard needed > available else { return }
        // The estimate grows with the batch: the largest multiple of the chunk size that fits.
        var low = 0, high = options.hyperparameters.chunksPerBatch
        while low < high {
            let middle = (low + high + 1) / 2
            if bytes(chunksPerBatch: middle) <= available { low = middle } else { high = middle - 1 }
        }
        let (batch, largest, chunk, fitting) = (options.hyperparameters.batchSize, low * options.hyperparameters.chunkSize,
                                                options.hyperparameters.chunkSize, low)
        let share = "\(gigabytes(available)) is available to each of the \(ranksOnThisNode) rank\(ranksOnThisNode == 1 ? "" : "s") on this node"
        throw InvalidSetting { name in
            let advice = fitting >= ranks ? "the largest batch that fits is \(name("batchSize")) \(largest)"
                                      : "not even one chunk of \(chunk) per rank fits: use a smaller \(name("chunkSize")) or model, or fewer ranks per node"
            return "\(name("batchSize")) \(batch) needs about \(gigabytes(needed)) per rank but \(share); \(advice)"
        }
    }

    /// Bytes this process may still allocate: /proc/meminfo's MemAvailable, or less when the
    /// memory limit of its cgroup (v2, or v1's memory controller) or of an ancestor leaves less.
    /// Nil where none can be read.
    static func availableMemory() -> Int? {
        func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
        func number(_ path: String) -> Int? { text(path).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        let system = text("/proc/meminfo")?.split(separator: "\n").first { $0.hasPrefix("MemAvailable:") }
            .flatMap { Int($0.split(separator: " ")[1]) }.map { $0 * 1024 }
        // "0::/a/b" (v2) or "4:memory:/a/b" (v1): the cgroup's path under the controller's mount.
        var limits: [Int] = []
        for line in (text("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let (mount, limit, usage): (String, String, String)
            if fields[1].isEmpty {
                (mount, limit, usage) = ("/sys/fs/cgroup", "memory.max", "memory.current")
            } else if fields[1].split(separator: ",").contains("memory") {
                (mount, limit, usage) = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")
            } else { continue }
            var path = String(fields[2])
            while true {
                if let l = number("\(mount)\(path)/\(limit)"), let u = number("\(mount)\(path)/\(usage)") { limits.append(max(l - u, 0)) }
                guard let slash = path.lastIndex(of: "/"), path != "/" else { break }
                path = slash == path.startIndex ? "/" : String(path[..<slash])
            }
        }
        return ([system].compactMap { $0 } + limits).min()
    }

    static func gigabytes(_ bytes: Int) -> String { String(format: "%.1f GB", Double(bytes) / 1e9) }
}
