-- Payer pages follow their payment live. Whenever a payment's status, received amount,
-- exception or confirmations change, whoever wrote it (an API replica, a chain worker on
-- another replica), every listening replica is told the payment's id at commit and nudges
-- the pages it holds open for it. The notice carries only the id: the page re-reads its
-- status, so nothing else leaks through the channel.
CREATE FUNCTION ctrip_payment_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ctrip_payments', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_changed AFTER UPDATE ON payments
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.amount_received_raw IS DISTINCT FROM NEW.amount_received_raw
          OR OLD.exception IS DISTINCT FROM NEW.exception
          OR OLD.confirmations IS DISTINCT FROM NEW.confirmations)
    EXECUTE FUNCTION ctrip_payment_changed();

-- A merchant's branding on its payer pages, kept small: an accent colour, and what a
-- token payment's QR code holds (the plain address by default; several wallets misread
-- the EIP-681 transfer form).
ALTER TABLE merchants ADD COLUMN accent_color text CHECK (accent_color ~ '^#[0-9a-f]{6}$');
ALTER TABLE merchants ADD COLUMN token_qr text NOT NULL DEFAULT 'address'
    CHECK (token_qr IN ('address', 'eip681'));
