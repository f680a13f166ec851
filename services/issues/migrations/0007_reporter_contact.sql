-- How to call back whoever reported an issue through an app, kept apart from
-- the description (which residents, cadres and other apps read): a JSON object
-- of name, phone and email, or '' when there is none.
ALTER TABLE issues ADD COLUMN reporter_contact TEXT NOT NULL DEFAULT '';
