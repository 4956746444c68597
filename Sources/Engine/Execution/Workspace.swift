/// Per-thread scratch memory, grown on first use and then reused: no allocation per step.
public final class Workspace {
    private var slots: [GrowingBuffer<Float>] = []

    public init() {}

    /// A buffer of at least `count` floats; slots are independent so a layer may hold several.
    public func floats(_ slot: Int, count: Int) -> UnsafeMutablePointer<Float> {
        while slots.count <= slot { slots.append(GrowingBuffer()) }
        return slots[slot].storage(count: count)
    }
}
