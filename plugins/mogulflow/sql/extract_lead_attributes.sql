-- Lead attributes (optional table) for one run of chartmogul_leads_trials. Parameters as in
-- extract_leads.sql. One row sets the custom attribute `key` of the lead's customer to `value`,
-- typed by `type` (String, Integer, Decimal, Timestamp, Boolean; any case); a null value removes it.
-- Keep the last two clauses: rows waiting for their lead (rejected before it was known), and rows
-- whose previous write failed, are read again.
SELECT
    lead_id,
    key,
    type,
    value,
    updated_at
FROM lead_attributes
WHERE :full_refresh
   OR (updated_at >= :window_start AND updated_at < :window_end)
   OR lead_id IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'attribute' AND status = 'waiting' AND data_source_uuid = :data_source_uuid
   )
   OR lead_id || '/' || key IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'attribute' AND status = 'failed' AND data_source_uuid = :data_source_uuid
   )
