//! Every statement the store sends, and every insert: the one place a client error becomes a
//! [`ClickHouseError`] (retryable or not), so readers and table modules never classify.

use clickhouse::sql::Bind;
use clickhouse::{Row, RowOwned, RowRead, RowWrite};

use crate::endpoint::{ClickHouseError, Endpoint};

/// A statement bound for one endpoint; its results come back with classified errors.
#[must_use = "a query does nothing until it is fetched or executed"]
pub struct Query {
    inner: clickhouse::query::Query,
    url: String,
}

impl Query {
    /// Binds the next `?` of the statement.
    pub fn bind(self, value: impl Bind) -> Self {
        Self {
            inner: self.inner.bind(value),
            url: self.url,
        }
    }

    /// Sends `name = value` as a ClickHouse setting with this statement only.
    pub fn with_setting(self, name: &str, value: impl Into<String>) -> Self {
        Self {
            inner: self.inner.with_setting(name, value),
            url: self.url,
        }
    }

    /// The whole result in ClickHouse's output `format` (for example `JSONCompact`).
    pub async fn fetch_bytes(self, format: &str) -> Result<Vec<u8>, ClickHouseError> {
        let Self { inner, url } = self;
        let classify = |e| ClickHouseError::classify(&url, e);
        let bytes = inner.fetch_bytes(format).map_err(classify)?.collect().await;
        Ok(bytes.map_err(classify)?.to_vec())
    }

    /// Every row of the result.
    pub async fn fetch_all<T: RowOwned + RowRead>(self) -> Result<Vec<T>, ClickHouseError> {
        let Self { inner, url } = self;
        inner
            .fetch_all()
            .await
            .map_err(|e| ClickHouseError::classify(&url, e))
    }

    /// Hands each row of the result to `each` as it arrives, without holding the result.
    pub async fn for_each_row<T: RowOwned + RowRead>(
        self,
        mut each: impl FnMut(T),
    ) -> Result<(), ClickHouseError> {
        let Self { inner, url } = self;
        let classify = |e| ClickHouseError::classify(&url, e);
        let mut cursor = inner.fetch::<T>().map_err(classify)?;
        while let Some(row) = cursor.next().await.map_err(classify)? {
            each(row);
        }
        Ok(())
    }

    /// The one row of the result (an error when there is none).
    pub async fn fetch_one<T: RowOwned + RowRead>(self) -> Result<T, ClickHouseError> {
        let Self { inner, url } = self;
        inner
            .fetch_one()
            .await
            .map_err(|e| ClickHouseError::classify(&url, e))
    }

    /// The first row of the result, if any.
    pub async fn fetch_optional<T: RowOwned + RowRead>(self) -> Result<Option<T>, ClickHouseError> {
        let Self { inner, url } = self;
        inner
            .fetch_optional()
            .await
            .map_err(|e| ClickHouseError::classify(&url, e))
    }

    /// Runs a statement that returns nothing.
    pub async fn execute(self) -> Result<(), ClickHouseError> {
        let Self { inner, url } = self;
        inner
            .execute()
            .await
            .map_err(|e| ClickHouseError::classify(&url, e))
    }
}

impl Endpoint {
    /// A statement on the pipeline's database.
    pub fn query(&self, sql: &str) -> Query {
        Query {
            inner: self.client().query(sql),
            url: self.url.clone(),
        }
    }

    /// A statement on the server, outside the pipeline's database (which may not exist yet).
    pub fn server_query(&self, sql: &str) -> Query {
        Query {
            inner: self.server_client().query(sql),
            url: self.url.clone(),
        }
    }

    /// Inserts `rows` into `table` of the database, as one insert (nothing for no rows): the
    /// one insert every table module and sink uses.
    pub async fn insert_rows<T: Row + RowWrite>(
        &self,
        table: &str,
        rows: &[T::Value<'_>],
    ) -> Result<(), ClickHouseError> {
        if rows.is_empty() {
            return Ok(());
        }
        let classify = |e| ClickHouseError::classify(&self.url, e);
        let mut insert = self.client().insert::<T>(table).await.map_err(classify)?;
        for row in rows {
            insert.write(row).await.map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }
}

/// `ids` in lower case, as the filters on event and correlation ids compare them (a UUID is
/// one id whatever the case it was written in).
pub(crate) fn lowercase(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| id.to_lowercase()).collect()
}
