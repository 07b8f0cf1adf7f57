-- Conversions for one run of chartmogul_merge_converted_leads. Parameters as in extract_leads.sql;
-- the window applies to converted_at. The last clause re-reads conversions whose paying customer
-- had not appeared yet or whose merge failed ('failed'), and those rejected because their lead was
-- not synced yet ('waiting': mogulflow keeps them out of a run until the lead is synced).
SELECT
    lead_id,
    billing_data_source_uuid,
    billing_customer_external_id,
    converted_at
FROM conversions
WHERE :full_refresh
   OR (converted_at >= :window_start AND converted_at < :window_end)
   OR lead_id IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'conversion' AND status IN ('failed', 'waiting') AND data_source_uuid = :data_source_uuid
   )
