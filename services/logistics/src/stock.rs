//! Supplies and stock: the item catalogue, depots, and a ledger whose running sum is the level, never below zero.

use serde_json::json;
use sqlx::{AnyConnection, Row};
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{now_micros, past_or_now, to_timestamp};
use linli_core::validate::{parse_id, parse_name, parse_opt_id, parse_text, required_enum};
use linli_core::{Actor, Error, Result, new_id};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn create_item(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CreateItemRequest>,
) -> Resp<pb::CreateItemResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let name = parse_name("name", &r.name)?;
    let unit = parse_name("unit_of_measure", &r.unit_of_measure)?;
    let item = api
        .store
        .create_item(actor, &idem, &name, &unit, r.perishable)
        .await?;
    Ok(Response::new(pb::CreateItemResponse { item: Some(item) }))
}

pub(crate) async fn list_items(
    api: &LogisticsApi,
    req: Request<pb::ListItemsRequest>,
) -> Resp<pb::ListItemsResponse> {
    let page = PageRequest::parse(req.get_ref().page_size, &req.get_ref().page_token)?;
    let (items, next_page_token) = api.store.list_items(&page).await?;
    Ok(Response::new(pb::ListItemsResponse {
        items,
        next_page_token,
    }))
}

pub(crate) async fn create_depot(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CreateDepotRequest>,
) -> Resp<pb::CreateDepotResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    let name = parse_name("name", &r.name)?;
    let address = parse_text("address", &r.address, 200)?;
    api.people.community(actor, &community).await?;
    let depot = api
        .store
        .create_depot(actor, &idem, &community, &name, &address)
        .await?;
    Ok(Response::new(pb::CreateDepotResponse {
        depot: Some(depot),
    }))
}

pub(crate) async fn list_depots(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListDepotsRequest>,
) -> Resp<pb::ListDepotsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let (depots, next_page_token) = api.store.list_depots(&community, &page).await?;
    Ok(Response::new(pb::ListDepotsResponse {
        depots,
        next_page_token,
    }))
}

pub(crate) async fn record_stock_movement(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::RecordStockMovementRequest>,
) -> Resp<pb::RecordStockMovementResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let depot = parse_id("depot_id", &r.depot_id)?;
    api.in_reach(actor, Owned::Depot, &depot).await?;
    let item = parse_id("item_id", &r.item_id)?;
    let kind = required_enum("kind", r.kind, MovementKind::from_proto)?;
    if kind == MovementKind::AllocationOut {
        return Err(
            Error::invalid("kind", "allocations go through AllocateStock or a batch").into(),
        );
    }
    let reason = parse_text("reason", &r.reason, 500)?;
    let quantity = domain::signed_quantity(kind, r.quantity, &reason)?;
    let reference = parse_text("reference", &r.reference, 100)?;
    let at = past_or_now("at", r.at.as_ref())?;
    let (movement, balance) = api
        .store
        .record_movement(
            actor,
            &idem,
            NewMovement {
                depot_id: &depot,
                item_id: &item,
                kind,
                quantity,
                reason: &reason,
                reference: &reference,
                at,
            },
        )
        .await?;
    Ok(Response::new(pb::RecordStockMovementResponse {
        movement: Some(movement),
        balance,
    }))
}

pub(crate) async fn allocate_stock(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::AllocateStockRequest>,
) -> Resp<pb::AllocateStockResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let depot = parse_id("depot_id", &r.depot_id)?;
    api.in_reach(actor, Owned::Depot, &depot).await?;
    let item = parse_id("item_id", &r.item_id)?;
    let quantity = domain::signed_quantity(MovementKind::AllocationOut, r.quantity, "")?;
    let reference = parse_text("reference", &r.reference, 100)?;
    let (movement, balance) = api
        .store
        .record_movement(
            actor,
            &idem,
            NewMovement {
                depot_id: &depot,
                item_id: &item,
                kind: MovementKind::AllocationOut,
                quantity,
                reason: "",
                reference: &reference,
                at: now_micros(),
            },
        )
        .await?;
    Ok(Response::new(pb::AllocateStockResponse {
        movement: Some(movement),
        balance,
    }))
}

pub(crate) async fn get_stock(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetStockRequest>,
) -> Resp<pb::GetStockResponse> {
    let depot = parse_id("depot_id", &req.get_ref().depot_id)?;
    api.in_reach(actor, Owned::Depot, &depot).await?;
    Ok(Response::new(pb::GetStockResponse {
        levels: api.store.stock(&depot).await?,
    }))
}

pub(crate) async fn list_stock_movements(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListStockMovementsRequest>,
) -> Resp<pb::ListStockMovementsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let depot = parse_id("depot_id", &r.depot_id)?;
    api.in_reach(actor, Owned::Depot, &depot).await?;
    let item = parse_opt_id("item_id", &r.item_id)?.unwrap_or_default();
    let (movements, next_page_token) = api.store.list_movements(&depot, &item, &page).await?;
    Ok(Response::new(pb::ListStockMovementsResponse {
        movements,
        next_page_token,
    }))
}

/// Changes a depot's stock of an item and records the movement, inside the
/// caller's transaction. Taking more than there is fails with
/// FAILED_PRECONDITION and changes nothing.
pub(crate) async fn move_stock(
    conn: &mut AnyConnection,
    actor: &Actor,
    c: StockChange<'_>,
) -> Result<(pb::StockMovement, i64)> {
    sqlx::query("INSERT INTO stock_levels (community_id, depot_id, item_id, quantity) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING")
        .bind(c.community_id)
        .bind(c.depot_id)
        .bind(c.item_id)
        .execute(&mut *conn)
        .await?;
    // The guard and the change are one statement: concurrent takers queue on the row and each sees what the last one left.
    let updated: Option<(i64,)> = sqlx::query_as(
        "UPDATE stock_levels SET quantity = quantity + $4 WHERE community_id = $1 AND depot_id = $2 AND item_id = $3 \
         AND quantity + $4 >= 0 AND quantity + $4 <= $5 RETURNING quantity",
    )
    .bind(c.community_id)
    .bind(c.depot_id)
    .bind(c.item_id)
    .bind(c.quantity)
    .bind(crate::domain::MAX_STOCK)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((balance,)) = updated else {
        let (have,): (i64,) = sqlx::query_as("SELECT quantity FROM stock_levels WHERE community_id = $1 AND depot_id = $2 AND item_id = $3")
            .bind(c.community_id)
            .bind(c.depot_id)
            .bind(c.item_id)
            .fetch_one(&mut *conn)
            .await?;
        crate::domain::check_stock(c.item_id, have, c.quantity)?;
        return Err(Error::Aborted(
            "the stock changed while it was moved; retry".into(),
        ));
    };
    let movement = pb::StockMovement {
        id: new_id(),
        depot_id: c.depot_id.to_owned(),
        item_id: c.item_id.to_owned(),
        kind: c.kind.to_proto(),
        quantity: c.quantity,
        reason: c.reason.to_owned(),
        reference: c.reference.to_owned(),
        at: Some(to_timestamp(c.at)),
        actor: actor.id.clone(),
    };
    sqlx::query("INSERT INTO stock_movements (community_id, id, depot_id, item_id, kind, quantity, reason, reference, at, actor, balance_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(c.community_id)
        .bind(&movement.id)
        .bind(c.depot_id)
        .bind(c.item_id)
        .bind(c.kind.as_str())
        .bind(c.quantity)
        .bind(c.reason)
        .bind(c.reference)
        .bind(c.at)
        .bind(&actor.id)
        .bind(balance)
        .execute(&mut *conn)
        .await?;
    Ok((movement, balance))
}

impl Store {
    pub async fn create_item(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        name: &str,
        unit: &str,
        perishable: bool,
    ) -> Result<pb::Item> {
        idempotency::create(
            &(self, name, unit),
            &self.db,
            actor,
            "logistics.item",
            idem,
            |&(_s, _name, _unit), tx, existing| {
                Box::pin(async move {

                    let row = sqlx::query(
                        "SELECT id, name, unit_of_measure, perishable FROM items WHERE id = $1",
                    )
                    .bind(existing)
                    .fetch_one(&mut *tx)
                    .await?;
                    item_from_row(&row)
                })
            },
            |&(_s, name, unit), tx, id| {
                Box::pin(async move {

                    let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM items WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if taken.is_some() {
                        return Err(Error::AlreadyExists(format!(
                            "an item named {name} exists already"
                        )));
                    }
                    sqlx::query("INSERT INTO items (id, name, unit_of_measure, perishable, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(id)
                        .bind(name)
                        .bind(unit)
                        .bind(i64::from(perishable))
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let item = pb::Item {
                        id: id.to_owned(),
                        name: name.into(),
                        unit_of_measure: unit.into(),
                        perishable,
                    };
                    let change = Change::created(
                            "",
                            "item.create",
                            "item",
                            id,
                            json!({ "name": name, "unit": unit, "perishable": perishable }),
                        );
                    Ok(Made::new(item, change))
                })
            },
        )
        .await
    }

    pub async fn list_items(&self, page: &PageRequest) -> Result<(Vec<pb::Item>, String)> {
        fetch_page(&self.db, "SELECT id, name, unit_of_measure, perishable FROM items WHERE id > $1 ORDER BY id LIMIT $2", vec![], page, item_from_row, |i| &i.id).await
    }

    pub(crate) async fn load_item(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Item> {
        let row =
            sqlx::query("SELECT id, name, unit_of_measure, perishable FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        row.as_ref()
            .map(item_from_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("item", id))
    }

    pub(crate) async fn check_items(&self, conn: &mut AnyConnection, lines: &Lines) -> Result<()> {
        for item in lines.keys() {
            self.load_item(conn, item).await?;
        }
        Ok(())
    }

    pub async fn create_depot(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        community_id: &str,
        name: &str,
        address: &str,
    ) -> Result<pb::Depot> {
        idempotency::create(
            &(self, community_id, name, address),
            &self.db,
            actor,
            "logistics.depot",
            idem,
            |&(s, _community_id, _name, _address), tx, existing| {
                Box::pin(async move {

                    let d = s.load_depot(&mut *tx, existing).await?;
                    Ok(d)
                })
            },
            |&(_s, community_id, name, address), tx, id| {
                Box::pin(async move {

                    sqlx::query("INSERT INTO depots (community_id, id, name, address, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(community_id)
                        .bind(id)
                        .bind(name)
                        .bind(address)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let change = Change::created(
                            community_id,
                            "depot.create",
                            "depot",
                            id,
                            json!({ "name": name, "address": address }),
                        );
                    Ok(Made::new(pb::Depot {
            id: id.to_owned(),
            community_id: community_id.into(),
            name: name.into(),
            address: address.into(),
        }, change))
                })
            },
        )
        .await
    }

    pub async fn load_depot(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Depot> {
        fetch_by_id(
            conn,
            "SELECT community_id, id, name, address FROM depots WHERE id = $1",
            id,
            "depot",
            depot_from_row,
        )
        .await
    }

    pub async fn depot(&self, id: &str) -> Result<pb::Depot> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_depot(&mut conn, id).await
    }

    pub async fn list_depots(
        &self,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Depot>, String)> {
        let sql = "SELECT community_id, id, name, address FROM depots WHERE community_id = $1 AND id > $2 ORDER BY id LIMIT $3";
        fetch_page(
            &self.db,
            sql,
            vec![community_id.into()],
            page,
            depot_from_row,
            |d| &d.id,
        )
        .await
    }

    /// A stock movement with an idempotency key: in, out, or adjusted.
    pub async fn record_movement(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewMovement<'_>,
    ) -> Result<(pb::StockMovement, i64)> {
        // Movements are keyed per community; a depot never changes community,
        // so it is read before the write begins.
        let community = self.depot(new.depot_id).await?.community_id;
        let scope = format!("logistics.movement.{community}");
        let ctx = (self, new, community.as_str(), scope.as_str(), idem, actor);
        idempotency::create(
            &ctx,
            &self.db,
            actor,
            &scope,
            idem,
            |&(_, new, community, ..), tx, existing| {
                Box::pin(async move {
                    let row = sqlx::query("SELECT community_id, id, depot_id, item_id, kind, quantity, reason, reference, at, actor, balance_after FROM stock_movements WHERE community_id = $1 AND id = $2")
                        .bind(community)
                        .bind(existing)
                        .fetch_one(&mut *tx)
                        .await?;
                    let movement = movement_from_row(&row)?;
                    // The balance the first answer gave; movements made before it was kept
                    // can only be answered with today's.
                    let balance = match row.try_get::<Option<i64>, _>("balance_after")? {
                        Some(b) => b,
                        None => {
                            sqlx::query_as::<_, (i64,)>("SELECT quantity FROM stock_levels WHERE community_id = $1 AND depot_id = $2 AND item_id = $3")
                                .bind(community)
                                .bind(new.depot_id)
                                .bind(&movement.item_id)
                                .fetch_one(&mut *tx)
                                .await?
                                .0
                        }
                    };
                    Ok((movement, balance))
                })
            },
            |&(s, new, community, scope, idem, actor), tx, _| {
                Box::pin(async move {
                    let NewMovement {
                        depot_id,
                        item_id,
                        kind,
                        quantity,
                        reason,
                        reference,
                        at,
                    } = new;
                    s.load_item(&mut *tx, item_id).await?;
                    let change = StockChange {
                        community_id: community,
                        depot_id,
                        item_id,
                        kind,
                        quantity,
                        reason,
                        reference,
                        at,
                    };
                    let (movement, balance) = move_stock(&mut *tx, actor, change).await?;
                    // The key was claimed before the movement had an id.
                    idempotency::made(&mut *tx, scope, &idem.key, &movement.id).await?;
                    let after = json!({ "depot_id": depot_id, "item_id": item_id, "kind": kind.as_str(), "quantity": quantity, "balance": balance, "reason": reason, "reference": reference });
                    let change =
                        Change::created(community, "stock.move", "stock_movement", &movement.id, after);
                    Ok(Made::new((movement, balance), change))
                })
            },
        )
        .await
    }

    pub async fn stock(&self, depot_id: &str) -> Result<Vec<pb::StockLevel>> {
        let mut conn = self.db.pool.acquire().await?;
        let depot = self.load_depot(&mut conn, depot_id).await?;
        let rows = sqlx::query("SELECT l.item_id, i.name, l.quantity FROM stock_levels l JOIN items i ON i.id = l.item_id WHERE l.community_id = $1 AND l.depot_id = $2 ORDER BY i.name")
            .bind(&depot.community_id)
            .bind(depot_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::StockLevel {
                    item_id: r.try_get("item_id")?,
                    item_name: r.try_get("name")?,
                    quantity: r.try_get("quantity")?,
                })
            })
            .collect()
    }

    pub async fn list_movements(
        &self,
        depot_id: &str,
        item_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::StockMovement>, String)> {
        let depot = self.depot(depot_id).await?;
        let sql = "SELECT community_id, id, depot_id, item_id, kind, quantity, reason, reference, at, actor FROM stock_movements \
                   WHERE community_id = $1 AND depot_id = $2 AND ($3 = '' OR item_id = $3) AND id > $4 ORDER BY id LIMIT $5";
        fetch_page(
            &self.db,
            sql,
            vec![
                depot.community_id.as_str().into(),
                depot_id.into(),
                item_id.into(),
            ],
            page,
            movement_from_row,
            |m| &m.id,
        )
        .await
    }

    /// The sum of a depot's ledger for an item (what its level must equal).
    pub async fn ledger_sum(&self, depot_id: &str, item_id: &str) -> Result<i64> {
        let (sum,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM stock_movements WHERE depot_id = $1 AND item_id = $2")
            .bind(depot_id)
            .bind(item_id)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(sum)
    }
}
