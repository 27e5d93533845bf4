-- Customer features from clean order lines: one row per customer_id.
-- Parameters (substituted before the query runs): {as_of} a TIMESTAMP literal, or the as_of column of a table
-- of (customer_id, as_of) that {as_of_join} joins (empty without one): only lines before it count;
-- {customer_filter} empty, or a condition that keeps some customers only.
-- Tables: transactions (clean canonical lines), returns (cancellations matched to earlier purchases).
WITH lines AS (
    SELECT customer_id, order_id, product_id, quantity, unit_price,
           quantity * unit_price AS amount, ts, isodow(ts) AS dow, hour(ts) AS hr
    FROM transactions{as_of_join}
    WHERE ts < {as_of} {customer_filter}
),
orders AS (
    SELECT customer_id, order_id, min(ts) AS ts, sum(amount) AS amount,
           sum(quantity) AS items, count(*) AS n_lines
    FROM lines
    GROUP BY customer_id, order_id
),
per_order AS (
    SELECT customer_id,
           count(*) AS frequency,
           min(ts) AS first_ts,
           max(ts) AS last_ts,
           avg(items) AS mean_basket_items,
           avg(n_lines) AS mean_basket_lines,
           count(DISTINCT date_trunc('month', ts)) AS active_months
    FROM orders
    GROUP BY customer_id
),
per_line AS (
    SELECT customer_id,
           sum(amount) AS monetary,
           sum(quantity) AS total_items,
           count(*) AS n_lines,
           count(DISTINCT product_id) AS distinct_products,
           sum(amount) / sum(quantity) AS mean_unit_price,
           sum(CASE WHEN dow = 1 THEN amount ELSE 0 END) / sum(amount) AS spend_share_mon,
           sum(CASE WHEN dow = 2 THEN amount ELSE 0 END) / sum(amount) AS spend_share_tue,
           sum(CASE WHEN dow = 3 THEN amount ELSE 0 END) / sum(amount) AS spend_share_wed,
           sum(CASE WHEN dow = 4 THEN amount ELSE 0 END) / sum(amount) AS spend_share_thu,
           sum(CASE WHEN dow = 5 THEN amount ELSE 0 END) / sum(amount) AS spend_share_fri,
           sum(CASE WHEN dow = 6 THEN amount ELSE 0 END) / sum(amount) AS spend_share_sat,
           sum(CASE WHEN dow = 7 THEN amount ELSE 0 END) / sum(amount) AS spend_share_sun,
           sum(CASE WHEN hr < 6 THEN amount ELSE 0 END) / sum(amount) AS spend_share_night,
           sum(CASE WHEN hr >= 6 AND hr < 12 THEN amount ELSE 0 END) / sum(amount) AS spend_share_morning,
           sum(CASE WHEN hr >= 12 AND hr < 18 THEN amount ELSE 0 END) / sum(amount) AS spend_share_afternoon,
           sum(CASE WHEN hr >= 18 THEN amount ELSE 0 END) / sum(amount) AS spend_share_evening
    FROM lines
    GROUP BY customer_id
),
ret AS (
    SELECT customer_id, sum(quantity * unit_price) AS returned_value
    FROM returns{as_of_join}
    WHERE matched AND ts < {as_of} {customer_filter}
    GROUP BY customer_id
)
SELECT
    o.customer_id,
    date_diff('day', CAST(o.last_ts AS DATE), CAST({as_of} AS DATE)) AS recency_days,
    o.frequency,
    l.monetary,
    l.monetary / o.frequency AS avg_order_value,
    date_diff('day', CAST(o.first_ts AS DATE), CAST({as_of} AS DATE)) AS tenure_days,
    CASE WHEN o.frequency > 1
         THEN (epoch(o.last_ts) - epoch(o.first_ts)) / 86400.0 / (o.frequency - 1)
         ELSE CAST(date_diff('day', CAST(o.first_ts AS DATE), CAST({as_of} AS DATE)) AS DOUBLE)
    END AS mean_days_between_orders,
    l.distinct_products,
    o.mean_basket_items,
    o.mean_basket_lines,
    l.total_items,
    l.n_lines,
    l.mean_unit_price,
    least(1.0, coalesce(r.returned_value, 0) / l.monetary) AS return_rate,
    l.spend_share_mon, l.spend_share_tue, l.spend_share_wed, l.spend_share_thu,
    l.spend_share_fri, l.spend_share_sat, l.spend_share_sun,
    l.spend_share_night, l.spend_share_morning, l.spend_share_afternoon, l.spend_share_evening,
    o.active_months,
    o.first_ts AS first_purchase,
    o.last_ts AS last_purchase
FROM per_order o{as_of_join}
JOIN per_line l ON l.customer_id = o.customer_id
LEFT JOIN ret r ON r.customer_id = o.customer_id
ORDER BY o.customer_id
