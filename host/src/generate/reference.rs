//! The shop's reference data: the generator's users and products written to
//! PostgreSQL tables `users` and `products`, which pipelines (the demo's
//! `catalog-enrich` stage) read as lookup tables. Rows are upserted, so
//! writing the catalog of the same seed again changes nothing.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::catalog::Catalog;

/// Writing the catalog failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the catalog to PostgreSQL: {0}")]
pub struct ReferenceError(#[from] sqlx::Error);

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, segment TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, name TEXT NOT NULL, \
     category TEXT NOT NULL, subcategory TEXT NOT NULL, brand TEXT NOT NULL, \
     price DOUBLE PRECISION NOT NULL, in_stock BOOLEAN NOT NULL)",
];

/// Creates the tables if needed and upserts every user and product.
pub fn write(catalog: &Catalog, database: &crate::connect::Database) -> Result<(), ReferenceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| ReferenceError(sqlx::Error::Io(error)))?;
    runtime.block_on(async {
        let mut connection = PgConnection::connect_with(&database.options()).await?;
        let mut transaction = connection.begin().await?;
        // `CREATE TABLE IF NOT EXISTS` is not safe against itself running
        // at the same moment elsewhere: writers of the catalog take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('weir.catalog'))")
            .execute(&mut *transaction)
            .await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut *transaction).await?;
        }
        let users = &catalog.users;
        sqlx::query(
            "INSERT INTO users (user_id, segment) SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[]) \
             ON CONFLICT (user_id) DO UPDATE SET segment = EXCLUDED.segment",
        )
        .bind(users.iter().map(|u| u.id.clone()).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.segment.name()).collect::<Vec<_>>())
        .execute(&mut *transaction)
        .await?;
        let products = &catalog.products;
        sqlx::query(
            "INSERT INTO products (product_id, name, category, subcategory, brand, price, in_stock) \
             SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
             $6::DOUBLE PRECISION[], $7::BOOLEAN[]) \
             ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, \
             category = EXCLUDED.category, subcategory = EXCLUDED.subcategory, \
             brand = EXCLUDED.brand, price = EXCLUDED.price, in_stock = EXCLUDED.in_stock",
        )
        .bind(products.iter().map(|p| p.id.clone()).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.category).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.subcategory).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.brand).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.price).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.in_stock).collect::<Vec<_>>())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        tracing::info!(
            users = users.len(),
            products = products.len(),
            "Catalog written to PostgreSQL (tables `users`, `products`)."
        );
        Ok(())
    })
}
