//! Is an AMQP broker answering at an address? For readiness checks (the
//! test harness and the benchmark wait for a broker with it): a mapped
//! container port accepts TCP connections before anything listens behind
//! it; only the broker's first frame says it does.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the address does not answer as an AMQP 0-9-1 broker.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the connection to {address} closed before connection.start: {source}")]
    Closed {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{address} answered something else than an AMQP 0-9-1 connection.start: {head:02x?}")]
    NotAmqp { address: String, head: [u8; 11] },
    #[error("no answer from {address} within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
}

/// Opens a TCP connection to `address` (`host:port`), sends the AMQP 0-9-1
/// protocol header and checks that the broker answers with
/// `connection.start`: a method frame (type 1) on channel 0 of class 10,
/// method 10; all within `timeout`. (The broker logs a warning when the
/// connection then closes.)
pub async fn answers_amqp(address: &str, timeout: Duration) -> Result<(), HandshakeError> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|source| HandshakeError::Connect {
                address: address.to_owned(),
                source,
            })?;
        let mut head = [0_u8; 11];
        let read = async {
            stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
            stream.read_exact(&mut head).await
        };
        read.await.map_err(|source| HandshakeError::Closed {
            address: address.to_owned(),
            source,
        })?;
        let class = u16::from_be_bytes([head[7], head[8]]);
        let method = u16::from_be_bytes([head[9], head[10]]);
        if head[0] == 1 && head[1..3] == [0, 0] && (class, method) == (10, 10) {
            Ok(())
        } else {
            Err(HandshakeError::NotAmqp {
                address: address.to_owned(),
                head,
            })
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(HandshakeError::Timeout {
                address: address.to_owned(),
                timeout,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_answers_with_connection_start() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            // First a server that closes at once, then one that answers
            // with the start of a connection.start frame, then one that
            // answers HTTP.
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut header = [0_u8; 8];
            stream.read_exact(&mut header).await.unwrap();
            assert_eq!(&header, b"AMQP\x00\x00\x09\x01");
            stream
                .write_all(&[1, 0, 0, 0, 0, 1, 0, 0, 10, 0, 10])
                .await
                .unwrap();
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"HTTP/1.1 400 Bad\r\n").await.unwrap();
        });
        let timeout = Duration::from_secs(5);
        assert!(matches!(
            answers_amqp(&address, timeout).await,
            Err(HandshakeError::Closed { .. })
        ));
        answers_amqp(&address, timeout).await.unwrap();
        assert!(matches!(
            answers_amqp(&address, timeout).await,
            Err(HandshakeError::NotAmqp { .. })
        ));
        server.await.unwrap();
    }
}
