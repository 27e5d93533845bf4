-- Behavioural features from clean events: one row per customer_id with at least one shopping event
-- (view, cart, remove_from_cart, purchase) before {as_of}; customers without a purchase are kept.
-- Parameters (substituted before the query runs): {as_of} a TIMESTAMP literal; only events before it count;
-- {customer_filter} empty, or a condition that keeps some customers only; {mobile_pattern} the regular
-- expression of mobile device names.
-- Table: events (clean canonical events, sessions filled in). Times are UTC; hours 0-5 night, 6-11 morning,
-- 12-17 afternoon, 18-23 evening; Saturday and Sunday are the weekend.
-- Price indices are geometric means of price / category median (a ratio of 2 and one of 0.5 average to 1).
-- Fills are written here, so the table has no NULL in a numeric column: rates with an empty denominator are 0,
-- price indices without priced events are 1 (the category median), days since the last purchase of a
-- customer who never bought is the length of the observation window (first event in the data to {as_of}).
-- Speed: groups are keyed by 64-bit hashes of the text keys (customer, session, category, brand), with the
-- text carried along by any_value(): on 10M events this halves the time of the large GROUP BYs. Two keys with
-- the same hash would share a group; at 100M events (about 25M sessions) the chance of that is about 1 in 10^5.
WITH ev AS NOT MATERIALIZED (
    SELECT customer_id, hash(customer_id) AS ck, session_id, ts, event_type, product_id, category, brand, price,
           device, order_id
    FROM events
    WHERE ts < {as_of} AND event_type IN ('view', 'cart', 'remove_from_cart', 'purchase') {customer_filter}
),
window_start AS (
    SELECT min(ts) AS first_ts FROM events WHERE ts < {as_of}
),
-- price reference: the median over the category's products (each product once, at its mean price; events
-- without a product id count one by one)
product_prices AS (
    SELECT any_value(category) AS category, avg(price) AS price
    FROM events
    WHERE ts < {as_of} AND price > 0 AND event_type IN ('view', 'cart', 'purchase') AND product_id IS NOT NULL
    GROUP BY product_id
    UNION ALL
    SELECT category, price
    FROM events
    WHERE ts < {as_of} AND price > 0 AND event_type IN ('view', 'cart', 'purchase') AND product_id IS NULL
),
category_median AS (
    SELECT category, median(price) AS med FROM product_prices WHERE category IS NOT NULL GROUP BY category
),
shop_median AS (
    SELECT median(price) AS med FROM product_prices
),
per_customer AS (
    SELECT e.ck,
           any_value(e.customer_id) AS customer_id,
           count(*) AS n_events,
           count(*) FILTER (WHERE e.event_type = 'view') AS views,
           count(*) FILTER (WHERE e.event_type = 'cart') AS carts,
           count(*) FILTER (WHERE e.event_type = 'remove_from_cart') AS cart_removals,
           count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
           avg(e.price) FILTER (WHERE e.event_type = 'view' AND e.price > 0) AS mean_viewed_price,
           exp(avg(ln(e.price / coalesce(m.med, s.med))) FILTER (WHERE e.event_type = 'view' AND e.price > 0))
               AS premium_index_viewed,
           exp(avg(ln(e.price / coalesce(m.med, s.med))) FILTER (WHERE e.event_type = 'purchase' AND e.price > 0))
               AS premium_index_bought,
           coalesce(sum(e.price) FILTER (WHERE e.event_type = 'purchase'), 0) AS spend,
           min(e.ts) AS first_ts,
           max(e.ts) AS last_ts,
           max(e.ts) FILTER (WHERE e.event_type = 'purchase') AS last_purchase_ts,
           avg(CASE WHEN hour(e.ts) < 6 THEN 1.0 ELSE 0.0 END) AS night_share,
           avg(CASE WHEN hour(e.ts) >= 6 AND hour(e.ts) < 12 THEN 1.0 ELSE 0.0 END) AS morning_share,
           avg(CASE WHEN hour(e.ts) >= 12 AND hour(e.ts) < 18 THEN 1.0 ELSE 0.0 END) AS afternoon_share,
           avg(CASE WHEN hour(e.ts) >= 18 THEN 1.0 ELSE 0.0 END) AS evening_share,
           avg(CASE WHEN isodow(e.ts) >= 6 THEN 1.0 ELSE 0.0 END) AS weekend_share,
           avg(CASE WHEN regexp_matches(lower(e.device), '{mobile_pattern}') THEN 1.0 ELSE 0.0 END)
               FILTER (WHERE e.device IS NOT NULL) AS mobile_share
    FROM ev e
    LEFT JOIN category_median m ON m.category = e.category
    CROSS JOIN shop_median s
    GROUP BY e.ck
),
sessions AS (
    SELECT any_value(ck) AS ck,
           count(*) AS n,
           min(ts) AS start_ts,
           epoch(max(ts)) - epoch(min(ts)) AS seconds,
           bool_or(event_type = 'cart') AS has_cart,
           bool_or(event_type = 'purchase') AS has_purchase
    FROM ev
    GROUP BY hash(customer_id, session_id)
),
per_session AS (
    SELECT ck,
           count(*) AS sessions,
           count(DISTINCT CAST(start_ts AS DATE)) AS active_days,
           avg(n) AS events_per_session,
           avg(seconds) / 60.0 AS session_duration_mean,
           max(seconds) / 60.0 AS session_duration_max,
           sum(seconds) / 60.0 AS session_duration_total,
           count(*) FILTER (WHERE has_cart AND NOT has_purchase) AS abandoned_sessions,
           count(*) FILTER (WHERE has_cart) AS cart_sessions
    FROM sessions
    GROUP BY ck
),
per_basket AS (
    SELECT ck, count(*) AS purchase_count
    FROM (
        SELECT any_value(ck) AS ck FROM ev WHERE event_type = 'purchase'
        GROUP BY hash(customer_id, coalesce(order_id, session_id))
    )
    GROUP BY ck
),
categories AS (
    SELECT ck, any_value(category) AS category,
           count(*) AS n,
           count(*) FILTER (WHERE event_type = 'view') AS n_view,
           count(*) FILTER (WHERE event_type = 'purchase') AS n_buy
    FROM ev
    WHERE category IS NOT NULL
    GROUP BY ck, hash(category)
),
per_category AS (
    SELECT ck,
           -sum((n / total) * log2(n / total)) AS category_entropy,
           count(*) FILTER (WHERE n_view > 0) AS distinct_categories_viewed,
           count(*) FILTER (WHERE n_buy > 0) AS distinct_categories_bought,
           min(CASE WHEN rn = 1 THEN category END) AS top_category
    FROM (
        SELECT *, CAST(sum(n) OVER (PARTITION BY ck) AS DOUBLE) AS total,
               row_number() OVER (PARTITION BY ck ORDER BY n DESC, category) AS rn
        FROM categories
    )
    GROUP BY ck
),
brands AS (
    SELECT ck,
           count(*) AS n,
           count(*) FILTER (WHERE event_type = 'view') AS n_view,
           count(*) FILTER (WHERE event_type = 'purchase') AS n_buy
    FROM ev
    WHERE brand IS NOT NULL
    GROUP BY ck, hash(brand)
),
per_brand AS (
    SELECT ck,
           CAST(max(n) AS DOUBLE) / sum(n) AS top_brand_share,
           count(*) FILTER (WHERE n_view > 0) AS distinct_brands_viewed,
           count(*) FILTER (WHERE n_buy > 0) AS distinct_brands_bought
    FROM brands
    GROUP BY ck
)
SELECT
    c.customer_id,
    c.n_events,
    c.views,
    c.carts,
    c.cart_removals,
    c.purchases,
    s.sessions,
    s.active_days,
    s.events_per_session,
    s.session_duration_mean,
    s.session_duration_max,
    s.session_duration_total,
    CASE WHEN c.views > 0 THEN least(1.0, c.carts / c.views) ELSE 0.0 END AS view_to_cart_rate,
    CASE WHEN c.carts > 0 THEN least(1.0, c.purchases / c.carts)
         WHEN c.purchases > 0 THEN 1.0 ELSE 0.0 END AS cart_to_purchase_rate,
    CASE WHEN c.views > 0 THEN least(1.0, c.purchases / c.views)
         WHEN c.purchases > 0 THEN 1.0 ELSE 0.0 END AS view_to_purchase_rate,
    CASE WHEN s.cart_sessions > 0 THEN s.abandoned_sessions / s.cart_sessions ELSE 0.0 END
        AS cart_abandonment_rate,
    coalesce(k.distinct_categories_viewed, 0) AS distinct_categories_viewed,
    coalesce(k.distinct_categories_bought, 0) AS distinct_categories_bought,
    coalesce(b.distinct_brands_viewed, 0) AS distinct_brands_viewed,
    coalesce(b.distinct_brands_bought, 0) AS distinct_brands_bought,
    coalesce(k.category_entropy, 0.0) + 0.0 AS category_entropy,
    coalesce(b.top_brand_share, 0.0) AS top_brand_share,
    coalesce(c.premium_index_viewed, 1.0) AS premium_index_viewed,
    coalesce(c.premium_index_bought, 1.0) AS premium_index_bought,
    coalesce(c.mean_viewed_price, 0.0) AS mean_viewed_price,
    c.spend,
    coalesce(p.purchase_count, 0) AS purchase_count,
    CASE WHEN p.purchase_count > 0 THEN c.spend / p.purchase_count ELSE 0.0 END AS avg_purchase_value,
    (epoch({as_of}) - epoch(c.last_ts)) / 86400.0 AS days_since_last_event,
    (epoch({as_of}) - epoch(coalesce(c.last_purchase_ts, w.first_ts))) / 86400.0 AS days_since_last_purchase,
    (epoch({as_of}) - epoch(c.first_ts)) / 86400.0 AS days_since_first_event,
    c.night_share,
    c.morning_share,
    c.afternoon_share,
    c.evening_share,
    c.weekend_share,
    coalesce(c.mobile_share, 0.0) AS mobile_share,
    k.top_category,
    c.first_ts AS first_event,
    c.last_ts AS last_event
FROM per_customer c
JOIN per_session s ON s.ck = c.ck
LEFT JOIN per_basket p ON p.ck = c.ck
LEFT JOIN per_category k ON k.ck = c.ck
LEFT JOIN per_brand b ON b.ck = c.ck
CROSS JOIN window_start w
ORDER BY c.customer_id
