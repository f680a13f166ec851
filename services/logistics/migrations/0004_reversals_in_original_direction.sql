-- Reversals are booked in their original's direction (and subtract from it);
-- earlier ones were booked in the opposite direction. Move them.
UPDATE funds_entries SET direction = (
    SELECT o.direction FROM funds_entries o
    WHERE o.community_id = funds_entries.community_id AND o.id = funds_entries.reverses
) WHERE category = 'reversal' AND reverses <> '';
