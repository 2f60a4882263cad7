import Foundation
import Hummingbird
import StratusControl
import StratusCore

extension API {
    struct ReservationView: Encodable {
        let id: String
        let org: String
        let project: String
        let gpu: String
        let gpus: Int
        let site: String?
        /// For a block of whole racks: the racks.
        let racks: [String]
        let start: String
        let end: String
        let status: String
        /// GPUs its jobs hold now (or have held for them ahead of the start).
        let used: Int
        let createdAt: String
        let cancelledAt: String?
    }

    func reservationView(_ r: Reservation, _ s: State, now: Timestamp) -> ReservationView {
        ReservationView(
            id: r.id.rawValue, org: r.org.rawValue, project: s.projects[r.project]?.name ?? "", gpu: r.gpuModel, gpus: r.gpus,
            site: r.site?.rawValue, racks: r.racks.map(\.rawValue), start: r.start.description, end: r.end.description,
            status: r.status(at: now),
            used: s.reservationUse()[r.id] ?? 0, createdAt: r.createdAt.description, cancelledAt: r.cancelledAt?.description)
    }

    func visibleReservation(_ id: ReservationID, _ p: Principal) async throws -> Reservation {
        guard let r = await plane.read({ $0.reservations[id] }) else {
            throw StratusError.notFound("reservation", id.rawValue)
        }
        try p.requireRead(r.org, "reservation", id.rawValue)
        return r
    }

    func addReservations(_ v1: RouterGroup<StratusContext>) {
        v1.post("reservations") { req, ctx in
            let p = try ctx.caller()
            let org = actingOrg(p)
            try p.requireWrite(org, "reservation", "")
            let spec = try ReservationSpec.parse(try await JSON.body(req))
            let lead = await plane.reservationLeadSeconds
            let outcome = try await plane.execute(
                .createReservation(CreateReservation(org: org, spec: spec, by: p.key, leadSeconds: lead)))
            let now = await plane.now
            let view = await plane.read { s in s.reservations[ReservationID(outcome.id)].map { reservationView($0, s, now: now) }
            }
            guard let view else { throw StratusError.notFound("reservation", outcome.id) }
            return JSON.response(view, status: .created)
        }
        v1.get("reservations") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let now = await plane.now
            let rows = await plane.read { s in
                s.reservations.values.filter { p.canRead($0.org) && (filter == nil || $0.org == filter) }
                    .sorted { $0.start != $1.start ? $0.start < $1.start : $0.id < $1.id }
                    .prefix(Limits.maxPageSize)
                    .map { reservationView($0, s, now: now) }
            }
            return JSON.response(Page(items: Array(rows), nextCursor: nil))
        }
        v1.get("reservations/:id") { _, ctx in
            let p = try ctx.caller()
            let r = try await visibleReservation(ReservationID(try ctx.parameters.require("id")), p)
            let now = await plane.now
            return JSON.response(await plane.read { reservationView(r, $0, now: now) })
        }
        v1.post("reservations/:id/cancel") { _, ctx in
            let p = try ctx.caller()
            let id = ReservationID(try ctx.parameters.require("id"))
            let r = try await visibleReservation(id, p)
            try p.requireWrite(r.org, "reservation", id.rawValue)
            try await plane.execute(.cancelReservation(CancelReservation(reservation: id, by: p.key)))
            let now = await plane.now
            return JSON.response(await plane.read { s in reservationView(s.reservations[id]!, s, now: now) })
        }
    }
}
