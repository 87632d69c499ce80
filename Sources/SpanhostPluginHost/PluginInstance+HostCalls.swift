import CSpanhost
import Logging
import SpanhostConfig
import SpanhostModel

/// What a plugin asks of its instance through the host table (HostTable.swift): emit, raise and
/// log. They run on the plugin's thread, inside one of its hooks or on a thread of its own.
extension PluginInstance {
    /// The counter of spans this processor took and the rest of its pipeline rejected for good
    /// (an emit answered PERMANENT): the client was answered already, so they are lost.
    public static let lostSpansCounter = "lost_spans"

    /// `host->emit`: the batch continues in the pipeline after this processor, on this thread
    /// (the pipeline's emit handler re-enters Pipeline.run(from:); see there).
    func emit(_ batch: SpanBatch) -> Int32 {
        guard let emitHandler else {
            log(level: UInt32(SPANHOST_LOG_ERROR), "emit called by a plugin that is not a processor in a pipeline")
            return Int32(SPANHOST_PERMANENT)
        }
        switch emitHandler(batch) {
        case .accepted: return Int32(SPANHOST_OK)
        case .refused: return Int32(SPANHOST_RETRYABLE)
        case .rejected(let message):
            counters.add(Self.lostSpansCounter, Int64(batch.spanCount))
            log(level: UInt32(SPANHOST_LOG_ERROR), "emitted spans rejected downstream and lost: \(message)")
            return Int32(SPANHOST_PERMANENT)
        }
    }

    func raise(_ notification: UnsafePointer<spanhost_notification>) -> Int32 {
        guard let raiseHandler else { return Int32(SPANHOST_PERMANENT) }
        raiseHandler(notification)
        return Int32(SPANHOST_OK)
    }

    func log(level: UInt32, _ text: String) {
        logger.log(level: Self.logLevel(level), "\(text)")
    }

    static func logUnattributed(level: UInt32, _ text: String) {
        unattributed.log(level: logLevel(level), "\(text)")
    }

    private static func logLevel(_ level: UInt32) -> Logger.Level {
        switch Int32(bitPattern: level) {
        case SPANHOST_LOG_DEBUG: return .debug
        case SPANHOST_LOG_INFO: return .info
        case SPANHOST_LOG_WARN: return .warning
        default: return .error
        }
    }
}
